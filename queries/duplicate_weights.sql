-- name: duplicate_weights
-- description: Weight vectors stored under more than one row (early-stopped models filed under several epoch bins), with where they occur.
-- param: zoo string  the zoo to inspect
SELECT weights_hash,
       count(*)                          AS rows,
       any_value(classes)                AS classes,
       any_value(activation)             AS activation,
       any_value(init)                   AS init,
       list(epoch ORDER BY epoch)        AS epochs,
       list(model_id ORDER BY model_id)  AS model_ids
FROM models
WHERE zoo = $zoo
GROUP BY weights_hash
HAVING count(*) > 1
ORDER BY rows DESC, model_ids[1];
