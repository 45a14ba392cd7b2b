-- name: accuracy_by_group
-- description: Model count and accuracy (mean, min, max) by activation, epoch and init, for one zoo.
-- param: zoo string  the zoo to summarise
-- param: min_classes int = 2  only models trained on at least this many classes
SELECT activation, epoch, init,
       count(*)                 AS models,
       round(avg(accuracy), 3)  AS mean_accuracy,
       round(min(accuracy), 3)  AS min_accuracy,
       round(max(accuracy), 3)  AS max_accuracy
FROM models
WHERE zoo = $zoo AND n_classes >= $min_classes
GROUP BY ALL
ORDER BY activation, epoch, init;
