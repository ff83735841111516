"""`python -m workbench.reproduce`: the command; its code lives in workbench.studies.reproduce."""

from workbench.studies.reproduce import main

if __name__ == "__main__":
    raise SystemExit(main())
