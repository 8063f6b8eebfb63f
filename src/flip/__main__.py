from flip.cli.entry import main

main()
