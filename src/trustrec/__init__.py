"""trustrec: trustworthy recommender systems.

Train real recommenders on real data, make them forget (users, interactions, items),
evaluate utility, fairness, completeness and efficiency, and benchmark it all side by side.
"""

__version__ = "0.1.0"
