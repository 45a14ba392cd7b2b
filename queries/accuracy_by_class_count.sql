-- name: accuracy_by_class_count
-- description: How accuracy falls with the number of classes a model was trained on, per activation.
-- param: zoo string  the zoo to summarise
-- param: epoch int = 11  the epoch bin
SELECT n_classes, activation, count(*) AS models, round(avg(accuracy), 3) AS mean_accuracy,
       round(stddev(accuracy), 3) AS sd_accuracy
FROM models
WHERE zoo = $zoo AND epoch = $epoch
GROUP BY ALL
ORDER BY n_classes, activation;
