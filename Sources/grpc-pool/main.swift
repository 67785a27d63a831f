// The command line arrives with the pool (issue: the pool); until then `demo` says so.
print("grpc-pool: the demo arrives with the pool; `make test` runs the bridge's tests today.")
