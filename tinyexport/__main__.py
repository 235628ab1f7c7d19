from tinyexport.cli import main

main()
