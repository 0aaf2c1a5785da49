// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute) of each
// Kubernetes object it reads: the library Flux, kpt and `kubectl wait`-style tools use to decide whether
// an object is Current, InProgress or Failed. The tests feed it KmsKeys the real operator wrote, so the
// verdicts come from the library itself, not from a copy of its rules.
//
// Input (stdin): one JSON object, or a JSON List (`kubectl get -o json`) whose items are judged in turn.
// Output (stdout): a JSON array of {"namespace", "name", "status", "message"}, one entry per object.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	var object map[string]interface{}
	// Kubernetes' own decoder: whole numbers become int64, as the API machinery (and kstatus) expect.
	if err := k8sjson.Unmarshal(raw, &object); err != nil {
		return fmt.Errorf("stdin is not one JSON object: %w", err)
	}
	objects := []map[string]interface{}{object}
	if items, ok := object["items"].([]interface{}); ok {
		objects = objects[:0]
		for i, item := range items {
			entry, ok := item.(map[string]interface{})
			if !ok {
				return fmt.Errorf("items[%d] is not an object", i)
			}
			objects = append(objects, entry)
		}
	}
	verdicts := make([]verdict, 0, len(objects))
	for _, content := range objects {
		u := &unstructured.Unstructured{Object: content}
		result, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		verdicts = append(verdicts, verdict{u.GetNamespace(), u.GetName(), result.Status.String(), result.Message})
	}
	encoder := json.NewEncoder(out)
	encoder.SetIndent("", " ")
	return encoder.Encode(verdicts)
}
