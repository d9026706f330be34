from callvet.cli import main

main()
