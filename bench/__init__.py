"""entityflow's benchmarks: ``python -m bench [section ...]`` prints one table per section.

Read ``__main__.py`` first (the sections and flags), then one workload module per section
(``inprocess.py``, ``rehydration.py``); ``stores.py`` makes throwaway stores and
``table.py`` prints the results.
"""
