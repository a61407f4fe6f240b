-- fail(fmt, ...): raises string.format(fmt, ...) as an error without a
-- position prefix, for messages meant for the user (a bad config key, a
-- missing file), which the CLI prints as they are.
return function(fmt, ...) error(string.format(fmt, ...), 0) end
