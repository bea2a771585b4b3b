# Images of `predict_tiled` and `predict_mask` (and the checks they share)
# that are no array of pixels: `(kwargs, error, match)` cases.
NOT_ONE_ARRAY = [
    (  # rows of unequal lengths: numpy's error, which named nothing
        {"image": [[[0, 0, 0]] * 8, [[0, 0, 0]] * 7]},
        ValueError,
        r"^`image` must be one array of pixels; nested lists need rows of one "
        r"length.*numpy: .*inhomogeneous",
    ),
    (  # "Received: image of shape ()"
        {"image": None},
        TypeError,
        r"^`image` must be an array of pixels \(a numpy array, a tensor or "
        r"nested lists\)\. Received: image=None of type NoneType$",
    ),
    (
        {"image": "a.png"},
        TypeError,
        r"nested lists\)\. Read the file first, e\.g\. np\.asarray\(PIL\.Image"
        r"\.open\(path\)\)\. Received: image='a\.png' of type str$",
    ),
]
