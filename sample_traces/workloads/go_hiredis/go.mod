module tracecorr/workloads/go_hiredis

go 1.21
