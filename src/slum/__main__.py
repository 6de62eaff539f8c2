from slum.cli import main

main()
