"""`neurolocal sweep`: grids of asynchrony settings on the sim engine (docs/asynchrony.md §5).

    grid.py      --vary KEY=V1,V2 parsed and checked; jobs (a point and a seed)
    worker.py    one job: gradient error of one relaxation, then training
    runner.py    parallel processes, one result file per job (resumable), progress
    report.py    the CSV and the plots
    command.py   the parser and the command
"""
