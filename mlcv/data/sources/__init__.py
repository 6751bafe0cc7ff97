"""The built-in datasets: their generators and the TFDS builders that store them.

- :mod:`.digits`, :mod:`.faces`: builders of scikit-learn's digits and scikit-image's LFW subset;
- :mod:`.circles`: scikit-learn's ``make_circles`` points (two concentric circles) and their builder;
- :mod:`.bodies`: synthetic depth images of posed bodies with part labels (NumPy only), stored by
  :mod:`.bodies_builder`;
- :mod:`.stereo`: the Middlebury Motorcycle pair and random-dot stereograms (NumPy only), stored by
  :mod:`.stereo_builders`.

The generators import no TFDS, so the classic methods use them without paying for it.
"""
