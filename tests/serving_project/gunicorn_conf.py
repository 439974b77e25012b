"""gunicorn settings of the live tests: sendfile on (its default), logs to stderr."""

sendfile = True
accesslog = "-"
access_log_format = '%(m)s %(U)s %(s)s range="%({range}i)s" %(B)s'
