# The rolling-deploy scenario rewrites this file on each host.
VERSION = "v1"
