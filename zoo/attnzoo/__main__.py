from attnzoo.cli import main

main()
