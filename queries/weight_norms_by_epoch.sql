-- name: weight_norms_by_epoch
-- description: Mean L2 norm of the whole weight vector by activation and epoch (served from the Zarr weights, no Parquet copy).
-- param: zoo string  the zoo to summarise
SELECT m.activation, m.epoch, count(*) AS models,
       round(avg(sqrt(array_inner_product(w.w, w.w))), 4) AS mean_l2_norm
FROM models m JOIN weights w USING (model_id)
WHERE m.zoo = $zoo
GROUP BY ALL
ORDER BY ALL;
