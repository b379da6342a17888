"""The Kaggle Facial Keypoints Detection CSV (15 keypoints, 96x96 grayscale pixels in the
`Image` column; most rows label only 4 of them), the seed article's data.

  python train.py --config configs/kaggle_faces.py --workdir workdirs/kaggle_faces \
      --config.data.files.train=data/kaggle/training.csv

The competition's training.csv is the only labelled file: hold some rows out as validation
(e.g. `tail -n 500`, with the header, into validation.csv).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "kaggle_faces"
  data = config.data
  data.source = "csv"
  data.files = {"train": "data/kaggle/training.csv", "validation": "data/kaggle/validation.csv"}
  data.norm_keypoints = ("left_eye_center", "right_eye_center")  # labelled in ~all rows
  data.bad_records = "skip"  # a few rows lack an eye centre, so have no normaliser
  data.augment.max_rotation_deg, data.augment.scale_range = 15.0, (0.9, 1.1)
  return config
