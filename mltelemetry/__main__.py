from mltelemetry.cli import main

main()
