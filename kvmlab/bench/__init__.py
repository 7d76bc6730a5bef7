"""``python -m kvmlab.bench``: speed figures measured side by side in one run.

Every row is measured on each available backend (``hw``: /dev/kvm, ``sim``: the simulated
kernel) and, for the guest loops, on unicorn as the outside reference; the table shows
medians of several repeats and the ratios between columns.  Targets live here, never in
timed tests.
"""
