"""What untrusted SQL may call: the guard's allowlists, per engine.

A function the guard does not know is refused. Two kinds of function call reach the guard:

- **Typed functions**: sqlglot recognised the name and built a typed node (``Count``, ``Substring`` …).
  :data:`TYPED_FUNCTIONS` lists the node classes allowed, written out by name so that a sqlglot upgrade
  adding a class (say a new ``ReadSomething``) refuses it until someone reviews it.
- **Anonymous functions**: a name sqlglot does not know. Allowed only when the lower-cased name is in
  :data:`COMMON_FUNCTIONS` or the engine's entry of :data:`ENGINE_FUNCTIONS`.

Table-valued functions (a function in ``FROM``) have their own, shorter lists. Functions that run SQL text
they receive (``query_to_xml``, ``ts_stat``, DuckDB ``query``), touch files, the network, locks, server
state or sessions are in none of the lists; :data:`NEVER` names the best known of them so the refusal
message can say why and the tests can check each one.
"""

from __future__ import annotations

# sqlglot typed function classes that are never allowed (I/O, secrets, sequences, AI/ML calls, session and
# server information); the allowlist below is every other class that existed when it was reviewed.
_DENIED_TYPED = frozenset({
    "AIAgg", "AIClassify", "AIEmbed", "AIForecast", "AIGenerate", "AISimilarity", "AISummarizeAgg",
    "ReadCSV", "ReadParquet", "ToFile", "Secret", "NextValueFor", "GenerateEmbedding", "GenerateText",
    "GenerateTable", "Predict", "MLForecast", "MLTranslate", "VectorSearch", "FeaturesAtTime",
    "DynamicIdentifier", "Encrypt", "EncryptRaw", "Decrypt", "DecryptRaw", "Compress", "DecompressBinary",
    "DecompressString", "CurrentAccount", "CurrentAccountName", "CurrentAvailableRoles", "CurrentClient",
    "CurrentIpAddress", "CurrentOrganizationName", "CurrentOrganizationUser", "CurrentRegion", "CurrentRole",
    "CurrentRoleType", "CurrentSecondaryRoles", "CurrentSession", "CurrentStatement", "CurrentTransaction",
    "CurrentUser", "CurrentUserId", "CurrentWarehouse", "CurrentVersion", "SessionUser", "Host", "Anonymous",
    "AnonymousAggFunc", "Func", "AggFunc", "SafeFunc", "Generator", "GapFill", "OpenJSON", "Search",
    "SearchIp",
})

TYPED_FUNCTIONS = frozenset(set(["Abs", "Acos", "Acosh", "AddMonths", "Agg", "And", "AnyValue", "Apply", "ApproxDistinct", "ApproxPercentileAccumulate", "ApproxPercentileCombine", "ApproxPercentileEstimate", "ApproxQuantile", "ApproxQuantiles", "ApproxTopK", "ApproxTopKAccumulate", "ApproxTopKCombine", "ApproxTopKEstimate", "ApproxTopSum", "ApproximateSimilarity", "ArgMax", "ArgMin", "Array", "ArrayAgg", "ArrayAll", "ArrayAny", "ArrayAppend", "ArrayCompact", "ArrayConcat", "ArrayConcatAgg", "ArrayConstructCompact", "ArrayContainedBy", "ArrayContains", "ArrayContainsAll", "ArrayDistinct", "ArrayExcept", "ArrayFilter", "ArrayFirst", "ArrayInsert", "ArrayIntersect", "ArrayLast", "ArrayMax", "ArrayMin", "ArrayOverlaps", "ArrayPosition", "ArrayPrepend", "ArrayRemove", "ArrayRemoveAt", "ArrayReverse", "ArraySize", "ArraySlice", "ArraySort", "ArraySum", "ArrayToString", "ArrayUnionAgg", "ArrayUniqueAgg", "ArraysZip", "Ascii", "Asin", "Asinh", "Atan", "Atan2", "Atanh", "Avg", "Base64DecodeBinary", "Base64DecodeString", "Base64Encode", "BitLength", "BitmapBitPosition", "BitmapBucketNumber", "BitmapConstructAgg", "BitmapCount", "BitmapOrAgg", "BitwiseAndAgg", "BitwiseCount", "BitwiseOrAgg", "BitwiseXorAgg", "Booland", "Boolnot", "Boolor", "BoolxorAgg", "ByteLength", "Case", "Cast", "CastToStrType", "Cbrt", "Ceil", "CheckJson", "CheckXml", "Chr", "CityHash64", "Coalesce", "CodePointsToBytes", "CodePointsToString", "Collate", "Collation", "Columns", "CombinedAggFunc", "CombinedParameterizedAgg", "Concat", "ConcatWs", "ConnectByRoot", "Contains", "Convert", "ConvertTimezone", "ConvertToCharset", "Corr", "Cos", "Cosh", "CosineDistance", "Cot", "Coth", "Count", "CountIf", "CovarPop", "CovarSamp", "Csc", "Csch", "CumeDist", "CurrentCatalog", "CurrentDatabase", "CurrentDate", "CurrentDatetime", "CurrentSchema", "CurrentSchemas", "CurrentTime", "CurrentTimestamp", "CurrentTimestampLTZ", "CurrentTimezone", "Date", "DateAdd", "DateBin", "DateDiff", "DateFromParts", "DateFromUnixDate", "DateStrToDate", "DateSub", "DateToDateStr", "DateToDi", "DateTrunc", "Datetime", "DatetimeAdd", "DatetimeDiff", "DatetimeSub", "DatetimeTrunc", "Day", "DayOfMonth", "DayOfWeek", "DayOfWeekIso", "DayOfYear", "Dayname", "Decode", "DecodeCase", "Degrees", "DenseRank", "DiToDate", "DotProduct", "Elt", "Encode", "EndsWith", "EqualNull", "EuclideanDistance", "Exists", "Exp", "Explode", "ExplodingGenerateSeries", "Extract", "Factorial", "FarmFingerprint", "First", "FirstValue", "Flatten", "Float64", "Floor", "Format", "FromBase", "FromBase32", "FromBase64", "FromISO8601Date", "FromISO8601Timestamp", "FromISO8601TimestampNanos", "FromJson", "GenerateBool", "GenerateDateArray", "GenerateDouble", "GenerateInt", "GenerateSeries", "GenerateTimestampArray", "GetExtract", "GetIgnoreCase", "Getbit", "Greatest", "GroupConcat", "Grouping", "GroupingId", "HashAgg", "Hex", "HexDecodeString", "Hll", "Hour", "If", "Initcap", "Inline", "Int64", "IsArray", "IsAscii", "IsInf", "IsNan", "IsNullValue", "JSONArray", "JSONArrayAgg", "JSONArrayAppend", "JSONArrayContains", "JSONArrayInsert", "JSONBContains", "JSONBContainsAllTopKeys", "JSONBContainsAnyTopKeys", "JSONBContainsTopKey", "JSONBDeleteAtPath", "JSONBExists", "JSONBExtract", "JSONBExtractScalar", "JSONBObjectAgg", "JSONBPathExists", "JSONBool", "JSONCast", "JSONExists", "JSONExtract", "JSONExtractArray", "JSONExtractScalar", "JSONFormat", "JSONKeys", "JSONKeysAtDepth", "JSONObject", "JSONObjectAgg", "JSONRemove", "JSONSet", "JSONStripNulls", "JSONTable", "JSONType", "JSONValueArray", "JarowinklerSimilarity", "JustifyDays", "JustifyHours", "JustifyInterval", "Kurtosis", "Lag", "Last", "LastDay", "LastValue", "LaxBool", "LaxFloat64", "LaxInt64", "LaxString", "Lead", "Least", "Left", "Length", "Levenshtein", "List", "Ln", "Localtime", "Localtimestamp", "Log", "LogicalAnd", "LogicalOr", "Lower", "LowerHex", "MD5", "MD5Digest", "MD5NumberLower64", "MD5NumberUpper64", "MakeInterval", "ManhattanDistance", "Map", "MapCat", "MapContainsKey", "MapDelete", "MapFromEntries", "MapInsert", "MapKeys", "MapPick", "MapSize", "MatchAgainst", "Max", "Median", "Min", "Minhash", "MinhashCombine", "Minute", "Mode", "Month", "Monthname", "MonthsBetween", "Nanvl", "Negative", "NetFunc", "NextDay", "Normal", "Normalize", "NthValue", "Ntile", "Nullif", "NumberToStr", "Nvl2", "ObjectAgg", "ObjectId", "ObjectInsert", "ObjectTransform", "Or", "Overlay", "Pad", "ParameterizedAgg", "ParseBignumeric", "ParseDatetime", "ParseIp", "ParseJSON", "ParseNumeric", "ParseTime", "ParseUrl", "PercentRank", "PercentileCont", "PercentileDisc", "Pi", "Posexplode", "PosexplodeOuter", "Pow", "PreviousDay", "Quantile", "Quarter", "Radians", "Rand", "Randn", "Randstr", "RangeBucket", "RangeN", "Rank", "Reduce", "RegDomain", "RegexpCount", "RegexpExtract", "RegexpExtractAll", "RegexpFullMatch", "RegexpILike", "RegexpInstr", "RegexpLike", "RegexpReplace", "RegexpSplit", "RegexpSubstr", "RegrAvgx", "RegrAvgy", "RegrCount", "RegrIntercept", "RegrR2", "RegrSlope", "RegrSxx", "RegrSxy", "RegrSyy", "RegrValx", "RegrValy", "Repeat", "Replace", "Reverse", "Right", "Rint", "Round", "RowNumber", "RtrimmedLength", "SHA", "SHA1Digest", "SHA2", "SHA2Digest", "SafeAdd", "SafeConvertBytesToString", "SafeDivide", "SafeMultiply", "SafeNegate", "SafeSubtract", "Sec", "Sech", "Second", "Seq1", "Seq2", "Seq4", "Seq8", "Shuffle", "Sign", "Sin", "Sinh", "Skewness", "Soundex", "SoundexP123", "Space", "Split", "SplitPart", "SplitToTable", "Sqrt", "StDistance", "StPoint", "Stack", "StandardHash", "StarMap", "StartsWith", "Stddev", "StddevPop", "StddevSamp", "StrPosition", "StrToDate", "StrToMap", "StrToTime", "StrToUnix", "String", "StringToArray", "StripNullValue", "Strtok", "StrtokSplitToTable", "StrtokToArray", "Struct", "StructExtract", "Stuff", "Substring", "SubstringIndex", "Sum", "Systimestamp", "Tan", "Tanh", "Time", "TimeAdd", "TimeDiff", "TimeFromParts", "TimeSlice", "TimeStrToDate", "TimeStrToTime", "TimeStrToUnix", "TimeSub", "TimeToStr", "TimeToTimeStr", "TimeToUnix", "TimeTrunc", "Timestamp", "TimestampAdd", "TimestampDiff", "TimestampFromParts", "TimestampLtzFromParts", "TimestampSub", "TimestampTrunc", "TimestampTzFromParts", "ToArray", "ToBase32", "ToBase64", "ToBinary", "ToBoolean", "ToChar", "ToCodePoints", "ToDays", "ToDecfloat", "ToDouble", "ToMap", "ToNumber", "ToVariant", "Transform", "Translate", "Trim", "Trunc", "Try", "TryBase64DecodeBinary", "TryBase64DecodeString", "TryCast", "TryHexDecodeBinary", "TryHexDecodeString", "TryToDecfloat", "TsOrDiToDi", "TsOrDsAdd", "TsOrDsDiff", "TsOrDsToDate", "TsOrDsToDateStr", "TsOrDsToDatetime", "TsOrDsToTime", "TsOrDsToTimestamp", "Typeof", "Unhex", "Unicode", "Uniform", "UnixDate", "UnixMicros", "UnixMillis", "UnixSeconds", "UnixToStr", "UnixToTime", "UnixToTimeStr", "Unnest", "Upper", "UtcDate", "UtcTime", "UtcTimestamp", "Uuid", "VarMap", "Variance", "VariancePop", "WeightString", "Week", "WeekOfYear", "WeekStart", "WidthBucket", "XMLElement", "XMLGet", "Xor", "Year", "YearOfWeek", "YearOfWeekIso", "Zipf", "_ExplodeOuter"]) - _DENIED_TYPED)

# Names sqlglot leaves anonymous that analytics SQL uses on every engine.
COMMON_FUNCTIONS = frozenset(["abs", "avg", "ceil", "ceiling", "coalesce", "count", "date", "datetime", "floor", "ifnull", "instr", "julianday", "length", "lower", "ltrim", "max", "min", "mod", "nullif", "power", "printf", "replace", "round", "rtrim", "sign", "sqrt", "strftime", "substr", "substring", "sum", "time", "total", "trim", "typeof", "upper", "char_length", "character_length", "octet_length", "position", "strpos", "lpad", "rpad", "left", "right", "reverse", "concat", "concat_ws", "greatest", "least", "trunc", "truncate", "div", "log", "log10", "ln", "exp", "pi", "radians", "degrees", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "unixepoch", "date_part", "datepart", "date_trunc", "to_char", "to_date", "to_timestamp", "age", "make_date", "make_time", "make_timestamp", "string_agg", "array_agg", "group_concat", "bool_and", "bool_or", "every", "percentile_cont", "percentile_disc", "median", "mode", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value", "iif", "nvl", "isnull", "likely", "unlikely", "likelihood", "unicode", "char", "hex", "quote", "format", "initcap", "btrim", "split_part", "regexp_replace", "regexp_matches", "regexp_like", "regexp_substr", "regexp_count", "regexp_split_to_array", "json_extract", "json_array_length", "json_type", "json_valid", "json_object", "json_array", "json_group_array", "json_group_object", "json_extract_path", "json_extract_path_text", "jsonb_extract_path", "jsonb_extract_path_text", "to_number", "justify_days", "justify_hours", "justify_interval", "epoch", "epoch_ms", "extract", "year", "month", "day", "hour", "minute", "second", "quarter", "week", "dayofweek", "dayofyear", "dayofmonth", "weekday", "yearweek", "last_day", "strptime", "list_value", "list_aggregate", "list_sort", "list_distinct", "list_contains", "list_extract", "array_length", "cardinality", "len", "string_split", "str_split", "contains", "starts_with", "ends_with", "prefix", "suffix", "arg_max", "arg_min", "argmax", "argmin", "any_value", "first", "last", "product", "fsum", "favg", "sumkahan", "kahan_sum", "histogram", "entropy", "mad", "quantile_cont", "quantile_disc", "approx_count_distinct", "approx_quantile", "bit_and", "bit_or", "bit_xor", "datediff", "dateadd", "date_diff", "date_add", "date_sub", "time_bucket", "make_interval", "to_days", "to_hours", "to_minutes", "to_seconds", "to_months", "to_years"])

# DuckDB's pure functions on lists: list_<aggregate> applies an aggregate to one list value, the others
# sort, select, zip or combine list values (nothing reads a table, a file or a setting).
DUCKDB_LIST_FUNCTIONS = frozenset(
    [f"list_{agg}" for agg in ("sum", "avg", "min", "max", "count", "product", "median", "mode", "first", "last",
                               "any_value", "bool_and", "bool_or", "bit_and", "bit_or", "bit_xor", "string_agg",
                               "stddev_pop", "stddev_samp", "var_pop", "var_samp", "entropy", "kurtosis",
                               "skewness", "sem", "mad", "histogram", "approx_count_distinct")]
    + ["list_concat", "list_cat", "list_append", "list_prepend", "list_intersect", "list_has", "list_zip",
       "list_select", "list_where", "list_grade_up", "list_reverse_sort", "list_resize", "list_element",
       "list_apply", "list_distance", "list_inner_product", "list_cosine_similarity",
       "list_dot_product", "flatten"])

ENGINE_FUNCTIONS: dict[str, frozenset[str]] = {
    "sqlite": frozenset(["glob", "like", "soundex"]),
    "duckdb": frozenset([*DUCKDB_LIST_FUNCTIONS, "list_transform", "list_filter", "list_reduce", "list_slice", "list_reverse", "list_unique", "list_position", "array_to_string", "struct_pack", "struct_extract", "map_keys", "map_values", "map_extract", "regexp_extract", "regexp_full_match", "date_part", "dayname", "monthname", "isodow", "isoyear", "yearweek", "epoch_us", "epoch_ns", "nextafter", "gamma", "lgamma", "factorial", "even", "bit_count", "ascii", "ord", "levenshtein", "damerau_levenshtein", "jaccard", "jaro_similarity", "jaro_winkler_similarity", "mismatches", "hamming", "editdist3", "array_slice", "list_has", "list_has_any", "list_has_all"]),
    "postgres": frozenset(["array_to_string", "array_position", "array_positions", "array_remove", "array_replace", "array_cat", "array_append", "array_prepend", "array_dims", "array_lower", "array_upper", "unnest", "generate_subscripts", "to_json", "to_jsonb", "jsonb_typeof", "json_typeof", "jsonb_array_length", "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "date_bin", "isfinite", "make_timestamptz", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "localtimestamp", "num_nonnulls", "num_nulls", "width_bucket", "scale", "gcd", "lcm", "factorial", "cbrt", "sinh", "cosh", "tanh", "regexp_split_to_table", "overlay", "translate", "ascii", "chr", "md5", "starts_with", "string_to_array"]),
}

# Table-valued functions (a function call in FROM) allowed per engine; typed ones by sqlglot class.
TYPED_TABLE_FUNCTIONS = frozenset({"Unnest", "GenerateSeries", "ExplodingGenerateSeries", "Explode", "Posexplode"})
TABLE_FUNCTIONS: dict[str, frozenset[str]] = {
    "sqlite": frozenset(["json_each", "json_tree", "pragma_table_info", "pragma_table_xinfo", "pragma_index_list", "pragma_index_info", "pragma_index_xinfo", "pragma_foreign_key_list", "generate_series"]),
    "duckdb": frozenset(["range", "generate_series", "unnest", "pragma_table_info"]),
    "postgres": frozenset(["generate_series", "generate_subscripts", "unnest", "json_each", "json_each_text", "jsonb_each", "jsonb_each_text", "json_array_elements", "json_array_elements_text", "jsonb_array_elements", "jsonb_array_elements_text", "regexp_matches", "regexp_split_to_table", "json_to_recordset", "jsonb_to_recordset"]),
}

# Refused with a reason of their own (each is checked by the tests): they run SQL text, touch files or the
# network, take locks, change server or session state, or crash an engine.
NEVER: dict[str, str] = {
    **dict.fromkeys(["query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema", "cursor_to_xml",
                     "ts_stat", "ts_rewrite", "query", "query_table", "xpath", "database_to_xml",
                     "schema_to_xml", "table_to_xml"], "runs SQL text or dumps whole tables"),
    **dict.fromkeys(["dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query",
                     "dblink_open", "dblink_fetch", "dblink_get_result", "http_get", "http_post"],
                    "opens a connection to another server"),
    **dict.fromkeys(["pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_file_write",
                     "lo_import", "lo_export", "lo_from_bytea", "lo_put", "read_csv", "read_csv_auto",
                     "read_parquet", "read_json", "read_json_auto", "read_text", "read_blob", "read_ndjson",
                     "glob", "sniff_csv", "readfile", "writefile", "edit", "load_extension", "fts3_tokenizer",
                     "parquet_scan", "sqlite_scan", "postgres_scan", "iceberg_scan", "delta_scan", "getenv"],
                    "reads or writes files or loads code"),
    **dict.fromkeys(["pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_advisory_lock", "pg_try_advisory_lock",
                     "pg_advisory_lock_shared", "pg_try_advisory_lock_shared", "pg_advisory_xact_lock",
                     "pg_try_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_notify", "set_config",
                     "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
                     "pg_switch_wal", "pg_backup_start", "pg_backup_stop", "pg_create_restore_point",
                     "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
                     "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
                     "nextval", "setval", "txid_current", "enable_logging", "disable_logging", "checkpoint",
                     "force_checkpoint", "randomblob", "zeroblob"],
                    "changes server or session state, sleeps, or allocates at will"),
}


def function_allowed(name: str, engine: str) -> bool:
    """Is the anonymous (not sqlglot-typed) function ``name`` allowed on ``engine``?"""
    low = name.lower()
    if low in NEVER:
        return False
    return low in COMMON_FUNCTIONS or low in ENGINE_FUNCTIONS.get(engine, frozenset())


def table_function_allowed(name: str, engine: str) -> bool:
    low = name.lower()
    return low not in NEVER and low in TABLE_FUNCTIONS.get(engine, frozenset())
