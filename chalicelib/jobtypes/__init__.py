"""The deployment's own job types: put a module here and name it in JOB_TYPES (`chalicelib.jobtypes.<module>`).

`chalice package` and `chalice deploy` ship chalicelib/ whole, so a module here reaches the Lambda
functions with no other step. A type from a pip package works too: list the package in
requirements.txt and name its module in JOB_TYPES. README.md, "Write your own job type", walks
through it.
"""
