-- name: spectra_by_epoch
-- description: Mean spectral figures of each layer by activation and epoch (needs `weightlake analyze spectra`).
-- param: zoo string  the zoo to summarise
-- requires: spectra
SELECT s.layer, m.activation, m.epoch, count(*) AS models,
       round(avg(s.spectral_norm), 4)  AS spectral_norm,
       round(avg(s.stable_rank), 3)    AS stable_rank,
       round(avg(s.effective_rank), 3) AS effective_rank,
       round(avg(s.mp_sigma2), 5)      AS mp_sigma2,
       round(avg(s.n_spikes), 2)       AS spikes,
       round(avg(s.alpha), 3)          AS alpha
FROM spectra s JOIN models m USING (model_id)
WHERE s.zoo = $zoo
GROUP BY ALL
ORDER BY s.layer, m.activation, m.epoch;
