"""PyInstaller entry point: the same ``main`` as the ``prestop`` console script."""

from agent.cli import main

if __name__ == "__main__":
    main()
