from selfteach.cli import main

main()
