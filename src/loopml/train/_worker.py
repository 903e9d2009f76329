"""A search worker process: ``python -m loopml.train._worker JOB.json``.

Its own module, which the package does not import, so that running it does not load
``loopml.train.search`` twice (once as a module and once as ``__main__``).
"""

import sys

from loopml.train.search import run_job_file

if __name__ == "__main__":
    run_job_file(sys.argv[1])
