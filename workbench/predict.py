"""`python -m workbench.predict`: the command; its code lives in workbench.serve.predict."""

from workbench.serve.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
