from rnncli.cli.main import main

main()
