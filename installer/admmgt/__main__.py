from admmgt.cli import main

main()
