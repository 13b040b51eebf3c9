"""Class sessions: peer instruction in a lecture hall.

A teacher starts a class from a lesson; students join from their phones with a short code (or its QR code), each
commits to a prediction at a step, the room sees the spread, then the step's experiment runs once on the server
and settles it.

    codes.py            join codes, teacher secrets, student tokens, nicknames
    store.py            the SQLite file that keeps classes, students, answers and results (classes.sqlite)
    sessions.py         the rules as the web sees them: lookups, the teacher's secret, refusals and their words
    experiment.py       a step's experiment, run once: the measured choice, kept for every screen
    views.py            what the teacher's and a student's screen show, from the store
    figures.py          the answer distribution as a Plotly bar chart
    qr.py               the join URL as an inline SVG QR code
    live.py             one watcher per class per process: polls the class's version, wakes its listeners
    teacher_routes.py   /class …      student_routes.py   /join …
"""
