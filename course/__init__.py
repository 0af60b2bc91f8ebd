"""The course kit: the chapters handed out as an assignment, with their exercises blank, and the
grade of a student's copy from the project's own tests (handout.py).

It reads the chapters as text and runs the tests; no chapter imports it. `make handout OUT=DIR`
and `make grade` are its front door.
"""
