pytest_plugins = ["tests.fix_cluster", "tests.fix_db", "tests.fix_clusters"]
