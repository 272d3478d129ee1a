from jobrunner.cli import main

# Guarded: MPI worker ranks of `python -m mpi4py.futures -m jobrunner ...` import this module as
# __worker__ to find the functions they are sent, and must not run the command line themselves.
if __name__ == "__main__":
    main()
