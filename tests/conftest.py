pytest_plugins = ["tests.fix_cluster", "tests.fix_db"]
