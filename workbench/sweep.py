"""`python -m workbench.sweep`: the command; its code lives in workbench.studies.sweep."""

from workbench.studies.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
