-- The size of a COMPLETED job's result (bytes of JSON) and, when it was over INLINE_RESULT_BYTES,
-- the key of the object holding it in RESULTS_BUCKET (`results/<owner>/<job id>.json`; `result`
-- is then NULL). The worker writes the object before the final UPDATE, so a COMPLETED row with a
-- key always has its object.
ALTER TABLE jobs ADD COLUMN result_bytes BIGINT UNSIGNED NULL AFTER result;
ALTER TABLE jobs ADD COLUMN result_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER result_bytes;
