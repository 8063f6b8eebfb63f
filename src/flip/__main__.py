from flip.cli.app import main

main()
