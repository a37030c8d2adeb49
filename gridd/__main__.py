from gridd.cli import main

main()
