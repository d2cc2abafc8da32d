// Package aberdeen embeds eddy's default real dataset: 929,022 readings of 23
// SDS011 particulate-matter sensors around Aberdeen, Scotland, from
// 2019-03-01 to 2019-05-24 (sensor.community archive, ODbL). See README.md in
// this directory for source, licence and columns.
//
// The file is embedded gzip-compressed (about 8 MB), so `eddy dev` and
// `eddy replay` work from a fresh clone anywhere. Read it with
// dataset.Open(dataset.EmbeddedAberdeen, ...) or through Open here.
package aberdeen

import (
	"bytes"
	_ "embed"
	"io"
)

// Name is the file name of the embedded dataset.
const Name = "aberdeen-sds011-2019-03-01_2019-05-24.csv.gz"

// Rows is the number of data rows (readings) in the file, header excluded.
const Rows = 929022

// Delimiter is the field separator of the file.
const Delimiter = ';'

// Mapping maps the file's columns to the seed schema (see dataset.ParseMapping).
const Mapping = "pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon"

//go:embed aberdeen-sds011-2019-03-01_2019-05-24.csv.gz
var data []byte

// Size is the size of the embedded file in bytes (gzip-compressed).
var Size = int64(len(data))

// Open returns a reader of the embedded file, still gzip-compressed. Each
// call returns an independent reader; Close is a no-op. Safe for concurrent
// use.
func Open() io.ReadCloser { return io.NopCloser(bytes.NewReader(data)) }
