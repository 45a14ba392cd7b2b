-- name: tracking_predictions
-- description: Stored weight vectors per source file and kind (GT ground truth, PD predicted, FN fine-tuned), with the rows' fine-tuning step columns and metric cells counted.
-- requires: predictions, tracking_values
WITH v AS (
    SELECT source_id, count(*) AS cells, count(DISTINCT "column") FILTER (WHERE step IS NOT NULL) AS step_columns
    FROM tracking_values GROUP BY source_id
)
SELECT p.source_kind, p.source_file, p.kind, p.step AS model_epoch, p.loss,
       count(*) AS vectors, min(p.row) AS first_row, max(p.row) AS last_row,
       any_value(v.cells) AS value_cells, any_value(v.step_columns) AS step_columns
FROM predictions p LEFT JOIN v USING (source_id)
GROUP BY ALL
ORDER BY p.source_file, p.kind;
