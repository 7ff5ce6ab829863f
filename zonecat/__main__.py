from zonecat.cli.main import main

main()
