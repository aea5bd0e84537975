"""`python -m spxcli.demo_main`: the demo command, as demo.py runs it inside the virtualenv."""
from spxcli.commands import demo

if __name__ == "__main__":
    demo()
