"""The job platform's library: one module per concern, wired together by app.py."""
