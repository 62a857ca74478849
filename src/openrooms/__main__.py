from openrooms.cli.main import main

main()
