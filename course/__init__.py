"""The course kit: the chapters handed out as an assignment, with their exercises blank and the
hidden tests left out (handout.py); the grade of a copy from the tests, read back as data
(grade.py, recorder.py); and a class graded, each submission taken in safely (submissions.py),
its functions called by the instructor's tests from a process that never imports them (apart.py)
in a fenced worker (worker.py, fence.py) with plain data between the two (wire.py), into a
gradebook and feedback (classroom.py), or on Gradescope (autograder.py); and what that costs (cost.py).

It reads the chapters as text and runs the tests in processes of their own; no chapter imports
it. Its front door: make handout OUT=DIR, make grade, make grade-class, make autograder.
"""
