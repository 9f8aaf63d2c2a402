-- This port's columns. The original's auth reads only email and password,
-- so it keeps working beside them.
--   password_scheme: 'plain' for the original's rows (the password column is
--     the password), 'bcrypt' once re-hashed; informational: auth tells a
--     hash from plaintext by the value itself.
--   admin: this suite's administrators (may download any MP3). Nobody is
--     one until an operator says so.
-- Earlier versions of this port added the same columns in place at start,
-- without a migrations table: each column is added only when missing, so
-- this step also adopts such a database.
SET @add_scheme = IF(
  (SELECT COUNT(*) FROM information_schema.COLUMNS
   WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user' AND COLUMN_NAME = 'password_scheme') = 0,
  'ALTER TABLE `user` ADD COLUMN password_scheme VARCHAR(16) NOT NULL DEFAULT ''plain''',
  'DO 0');
PREPARE add_scheme FROM @add_scheme;
EXECUTE add_scheme;
DEALLOCATE PREPARE add_scheme;

SET @add_admin = IF(
  (SELECT COUNT(*) FROM information_schema.COLUMNS
   WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user' AND COLUMN_NAME = 'admin') = 0,
  'ALTER TABLE `user` ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE',
  'DO 0');
PREPARE add_admin FROM @add_admin;
EXECUTE add_admin;
DEALLOCATE PREPARE add_admin;
