from rnncli.cli.app import main

main()
