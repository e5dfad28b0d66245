"""The app's data layer: a pandas DataFrame built when Django loads the app's models, as
apps that analyse data do (so a preloading server imports pandas before it forks)."""

import pandas as pd

FRAME = pd.DataFrame({"n": range(1000), "square": [i * i for i in range(1000)]})
