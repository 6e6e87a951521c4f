"""`python -m services.trainer ...`: the training job's command line (services/trainer/cli.py)."""

from services.trainer.cli import main

if __name__ == "__main__":
    main()
