-- name: super_weight_is_largest
-- description: Is each layer's most harmful weight also its largest-magnitude one, and does the activation-spike proxy point at it (needs `weightlake analyze super-weights`).
-- param: zoo string  the zoo to summarise
-- requires: super_weights
SELECT layer, count(*) AS models,
       round(avg(CASE WHEN magnitude_rank = 1 THEN 1.0 ELSE 0.0 END), 3) AS share_largest,
       round(median(magnitude_rank), 1) AS median_magnitude_rank,
       round(avg(CASE WHEN proxy_rank = 1 THEN 1.0 ELSE 0.0 END), 3) AS share_proxy_hits,
       round(median(proxy_rank), 1) AS median_proxy_rank,
       round(avg(accuracy_drop), 2) AS mean_drop,
       max(layer_size) AS layer_size
FROM super_weights
WHERE zoo = $zoo AND rank = 1
GROUP BY layer
ORDER BY layer;
