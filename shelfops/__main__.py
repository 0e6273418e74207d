from shelfops.cli.main import main

main()
