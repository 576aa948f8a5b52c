"""Docker's JSON on the way out: each module renders one kind of typed record as the Engine API shows it.

The services keep and return typed values (records, results); only these modules (and the request
parsing in api/request.py and the handlers) know Docker's field names and shapes. Each function is
pure: a record in, JSON-ready values out.
"""
