"""Labels out to where researchers analyse them: Parquet by partition_date, and a dictionary.

One day of each label table's preferred rows (and of `posts_labelled`, the posts with every
labeller's columns) becomes one Parquet file, written to a staging name and moved into place, at
`<destination>/<dataset>/partition_date=YYYY-MM-DD/part-0.parquet`; README.md and schema.json
beside the data say what every column is and where the Perspective sunset falls in the rows.
"""
